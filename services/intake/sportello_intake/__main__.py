"""``python -m sportello_intake``: serve with uvicorn on SERVICE_HOST:SERVICE_PORT."""

from sportello_intake.app import create_app
from sportello_intake.settings import IntakeSettings
from sportello_runtime.serve import serve

if __name__ == "__main__":
    serve(create_app, IntakeSettings())
