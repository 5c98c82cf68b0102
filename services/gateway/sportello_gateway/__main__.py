"""``python -m sportello_gateway``: serve with uvicorn on SERVICE_HOST:SERVICE_PORT."""

from sportello_gateway.app import create_app
from sportello_gateway.settings import GatewaySettings
from sportello_runtime.serve import serve

if __name__ == "__main__":
    serve(create_app, GatewaySettings())
