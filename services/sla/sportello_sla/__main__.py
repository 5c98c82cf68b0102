"""``python -m sportello_sla``: serve with uvicorn on SERVICE_HOST:SERVICE_PORT."""

from sportello_runtime.serve import serve
from sportello_sla.app import create_app
from sportello_sla.settings import SlaSettings

if __name__ == "__main__":
    serve(create_app, SlaSettings())
