"""Knowledge: the help desk's memory (articles, archived cases) and its search."""
