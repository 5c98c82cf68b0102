"""Knowledge's use cases: the library of articles, the archive of cases, the search (and
what it suggests), and the keeper of this replica's index."""
