"""A mail catcher for `make up` and the system benchmark: the relay notices are sent to."""
