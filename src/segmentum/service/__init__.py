"""The REST service and the web dashboard (FastAPI): thin layers over the library."""
