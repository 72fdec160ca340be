"""Optional PGP signing of cic-meta writes (python-gnupg), as cic-types' ``Signer`` does it.

The signature is a gpg *clearsigned* digest. Config ``[pgp]``: ``PGP_SIGN`` (default false),
``PGP_KEYS_PATH`` (a gnupg home; empty: a temporary one), ``PGP_PRIVATE_KEY_FILE`` (an
armored secret key imported at ``open()``), ``PGP_PASSPHRASE``.
"""
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

import gnupg

from .errors import ConfigError, WalletError

logger = logging.getLogger(__name__)


class PgpSigner:
    """Callable ``digest -> signature object`` for ``MetaClient(signer=...)``. Use ``open()``
    (or a ``with`` block) before signing; ``close()`` removes a temporary gnupg home."""

    def __init__(self, keys_path=None, private_key_file=None, passphrase=None):
        self.keys_path = Path(keys_path) if keys_path else None
        self.private_key_file = Path(private_key_file) if private_key_file else None
        self.passphrase = passphrase
        self.gpg = None
        self.fingerprint = None
        self._tmp_home = None

    def open(self):
        """Load the keyring, import the private key, and prove the passphrase with a test signature."""
        try:
            return self._open()
        except BaseException:
            self.close()
            raise

    def _open(self):
        home = self.keys_path
        if home is None:
            self._tmp_home = tempfile.mkdtemp(prefix="cic-seed-gpg-")
            home = Path(self._tmp_home)
        elif not home.is_dir():
            raise ConfigError(f"PGP_KEYS_PATH {home} is not a directory: create it or leave it empty")
        try:
            self.gpg = gnupg.GPG(gnupghome=str(home))
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot run gpg for metadata signing ({e}): install gnupg or set PGP_SIGN=false") from None
        if self.private_key_file is not None:
            if not self.private_key_file.is_file():
                raise ConfigError(f"PGP_PRIVATE_KEY_FILE {self.private_key_file} does not exist")
            result = self.gpg.import_keys(self.private_key_file.read_text(),
                                          passphrase=self.passphrase)
            if not result.fingerprints:
                raise WalletError(f"no key could be imported from {self.private_key_file}")
            self.fingerprint = result.fingerprints[0]
        else:
            secret = self.gpg.list_keys(secret=True)
            if not secret:
                raise ConfigError(f"no secret key in {home}: set PGP_PRIVATE_KEY_FILE or PGP_SIGN=false")
            self.fingerprint = secret[0]["fingerprint"]
        self._sign("0" * 16)
        logger.info("signing metadata with key %s", self.fingerprint)
        return self

    def close(self):
        """Forget the keyring; stop the gpg-agent of a temporary gnupg home and remove it."""
        if self._tmp_home is not None:
            subprocess.run(["gpgconf", "--homedir", self._tmp_home, "--kill", "gpg-agent"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            shutil.rmtree(self._tmp_home, ignore_errors=True)
            self._tmp_home = None
        self.gpg = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def _sign(self, digest):
        signed = self.gpg.sign(digest, keyid=self.fingerprint, passphrase=self.passphrase)
        if not signed.fingerprint or "BEGIN PGP SIGNATURE" not in str(signed):
            raise WalletError(f"gpg could not sign with key {self.fingerprint} ({signed.status or 'no output'}): "
                              "check PGP_PASSPHRASE")
        return signed

    def __call__(self, digest: str) -> dict:
        signed = self._sign(digest)
        return {"engine": "pgp", "algo": signed.hash_algo or "sha256", "data": str(signed), "digest": digest}


def signer_from_settings(settings):
    """A PgpSigner (not opened yet) when PGP_SIGN is on, else None."""
    if not settings.bool("PGP_SIGN"):
        return None
    return PgpSigner(settings.path("PGP_KEYS_PATH"), settings.path("PGP_PRIVATE_KEY_FILE"),
                     settings.get("PGP_PASSPHRASE"))
