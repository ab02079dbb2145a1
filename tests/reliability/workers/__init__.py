"""The processes of the reliability tests: an engine, a client, a fake outside service.

Each module runs as its own process (``python -m workers.NAME ...`` with
``tests/reliability`` on the path); they talk over Unix sockets in lines of
JSON (:mod:`workers.wire`) and keep what they saw in files of their own, so
a driver can SIGKILL the engine and still read what every side knew.
"""
