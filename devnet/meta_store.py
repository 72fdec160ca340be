"""Storage of the devnet meta server: one SQLite table, WAL mode, safe for concurrent requests.

``store(hash, content, mime_type, updated)``: a document is the JSON text of
``{id, timestamp, data, signature}``; immutable content is its raw bytes with a mime type.
Every write is a whole-row replace (immutable content: insert if absent).
"""
import sqlite3
import threading
import time
from pathlib import Path


class Store:
    """SQLite table ``store(hash, content, mime_type)``: documents as JSON text, immutable bytes."""

    def __init__(self, path):
        self.path = Path(path)
        self.lock = threading.Lock()
        self.db = None

    def open(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: safe if the server dies, fsync only at checkpoints
        self.db.execute("PRAGMA wal_autocheckpoint=10000")  # fewer checkpoints (each one fsyncs)
        self.db.execute("CREATE TABLE IF NOT EXISTS store (hash TEXT PRIMARY KEY, content BLOB NOT NULL,"
                        " mime_type TEXT, updated REAL NOT NULL)")
        return self

    def close(self):
        if self.db is not None:
            self.db.close()
            self.db = None

    def get(self, pointer):
        with self.lock:
            return self.db.execute("SELECT content, mime_type FROM store WHERE hash = ?", (pointer,)).fetchone()

    def put(self, pointer, content, mime_type=None, replace=True):
        """Store; returns False when ``replace`` is off and the pointer already exists."""
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        with self.lock:
            cursor = self.db.execute(f"{verb} INTO store (hash, content, mime_type, updated) VALUES (?, ?, ?, ?)",
                                     (pointer, content, mime_type, time.time()))
            return cursor.rowcount > 0
