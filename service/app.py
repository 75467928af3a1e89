"""`uvicorn service.app:app` entry: the app built from FORECASTER_* settings."""

from service.main import create_app

app = create_app()
