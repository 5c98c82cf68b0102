"""``python -m sportello_routing``: serve with uvicorn on SERVICE_HOST:SERVICE_PORT."""

from sportello_routing.app import create_app
from sportello_routing.settings import RoutingSettings
from sportello_runtime.serve import serve

if __name__ == "__main__":
    serve(create_app, RoutingSettings())
