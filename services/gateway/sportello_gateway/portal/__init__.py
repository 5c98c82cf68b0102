"""The requester portal's pages: texts in Italian and English, the HTML, one style sheet
and one small script (search while typing). Served by ``api/portal.py``."""
