"""A MongoDB wire-protocol emulator for machines where no MongoDB server can run.

Never imported by the services: they talk to it over the wire like to any
MongoDB, through PyMongo's ``AsyncMongoClient`` at ``MONGO_URL``.
"""

from sportello_mongo_emulator.server import MongoEmulator

__all__ = ["MongoEmulator"]
