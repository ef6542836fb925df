"""neuro_server: the platform that runs jobs (aiohttp.web, SQLite, scheduler, runtimes)."""

__version__ = "0.1.0"
