"""Knowledge's rules, as pure functions over frozen records: articles and their workflow,
archived cases and candidates, recurring problems, the text of a search."""
