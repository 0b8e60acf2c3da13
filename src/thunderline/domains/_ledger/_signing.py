"""The ledger's ECDSA P-256 signing key: creation, storage, fingerprint, sign, verify.

Load (or create on first start) the key of a data directory::

    >>> import tempfile, pathlib
    >>> data_dir = pathlib.Path(tempfile.mkdtemp()) / "data"
    >>> key = LedgerSigningKey.load_or_create(data_dir)
    >>> key.verify(key.sign(b"x" * 32), b"x" * 32)
    True

Storage, in the data directory (created with mode ``0700`` when missing):

* :data:`PRIVATE_KEY_FILE` (PKCS#8 PEM, unencrypted) is created with mode
  ``0600`` using ``O_CREAT | O_EXCL`` so it is never readable by others, not even
  for a moment; a key file readable or writable by group or others is refused
  (:class:`SigningKeyError`), as ``ssh`` does;
* :data:`PUBLIC_KEY_FILE` (SubjectPublicKeyInfo PEM) is written next to it so a
  verifier can check signatures without the private key.

The key id is ``sha256:`` followed by the hex SHA-256 of the DER
SubjectPublicKeyInfo. Signatures are ECDSA over SHA-256 with deterministic
nonces (RFC 6979), DER encoded. Nothing here logs or prints key material, and the
private key object's ``repr`` shows only the key id.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from thunderline.runtime import ThunderlineError

__all__ = [
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "LedgerSigningKey",
    "SigningKeyError",
    "key_id_of",
    "load_public_key_pem",
    "public_key_pem",
    "verify_signature",
]

#: File name of the private signing key inside the data directory.
PRIVATE_KEY_FILE = "ledger_signing_key.pem"

#: File name of the public key inside the data directory.
PUBLIC_KEY_FILE = "ledger_public_key.pem"

_ALGORITHM = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)


class SigningKeyError(ThunderlineError, PermissionError):
    """The signing key is missing, unreadable, too widely readable, or not P-256.

    Attributes:
        path: The key file (or data directory) at fault.
        reason: What is wrong.

    .. versionadded:: 0.1
    """

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"ledger signing key {path}: {reason}")


def public_key_pem(public_key: ec.EllipticCurvePublicKey) -> str:
    """Return the SubjectPublicKeyInfo PEM text of a public key.

    .. versionadded:: 0.1
    """
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_key_pem(text: str | bytes) -> ec.EllipticCurvePublicKey:
    """Parse a PEM public key and check it is a P-256 key.

    Args:
        text: SubjectPublicKeyInfo PEM.

    Returns:
        The public key.

    Raises:
        ValueError: The text is not a PEM P-256 public key.

    .. versionadded:: 0.1
    """
    data = text.encode("ascii") if isinstance(text, str) else text
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError(f"expected an ECDSA P-256 public key, got {type(key).__name__}")
    return key


def key_id_of(public_key: ec.EllipticCurvePublicKey) -> str:
    """Return ``sha256:<hex>`` of the DER SubjectPublicKeyInfo of ``public_key``.

    .. versionadded:: 0.1
    """
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def verify_signature(
    public_key: ec.EllipticCurvePublicKey, signature: bytes, message: bytes
) -> bool:
    """Return whether ``signature`` is a valid ECDSA P-256/SHA-256 signature of ``message``.

    .. versionadded:: 0.1
    """
    try:
        public_key.verify(signature, message, _ALGORITHM)
    except (InvalidSignature, ValueError):
        return False
    return True


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SigningKeyError(
            path,
            f"permissions {stat.S_IMODE(mode):04o} are too open; expected 0600 (owner only)",
        )


class LedgerSigningKey:
    """An ECDSA P-256 private key used to sign ledger records and heads.

    Thread-safe: signing has no shared mutable state.

    Attributes:
        public_key: The matching public key.
        key_id: ``sha256:`` + hex fingerprint of the public key.

    .. versionadded:: 0.1
    """

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        """Wrap a P-256 private key (use :meth:`load_or_create` in applications)."""
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ValueError(f"expected a P-256 key, got curve {private_key.curve.name}")
        self._private_key = private_key
        self.public_key: ec.EllipticCurvePublicKey = private_key.public_key()
        self.key_id: str = key_id_of(self.public_key)

    def __repr__(self) -> str:
        return f"<LedgerSigningKey {self.key_id}>"

    @classmethod
    def generate(cls) -> LedgerSigningKey:
        """Return a fresh key held only in memory.

        .. versionadded:: 0.1
        """
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def load(cls, data_dir: Path | str) -> LedgerSigningKey:
        """Load the key stored in ``data_dir``; never creates one.

        Args:
            data_dir: The data directory holding :data:`PRIVATE_KEY_FILE`.

        Returns:
            The key.

        Raises:
            SigningKeyError: The file is missing, unreadable, too open, or not a
                P-256 key.

        .. versionadded:: 0.1
        """
        path = Path(data_dir) / PRIVATE_KEY_FILE
        try:
            _check_private(path)
            data = path.read_bytes()
        except FileNotFoundError:
            raise SigningKeyError(path, "no such file") from None
        except OSError as exc:
            raise SigningKeyError(path, exc.strerror or str(exc)) from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise SigningKeyError(path, "not an unencrypted PEM private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise SigningKeyError(path, "not an ECDSA P-256 key")
        return cls(key)

    @classmethod
    def load_or_create(cls, data_dir: Path | str) -> LedgerSigningKey:
        """Load the key in ``data_dir``, creating the directory and key on first start.

        A missing directory is created with mode ``0700``; a new key file gets
        mode ``0600`` atomically (``O_CREAT | O_EXCL``), so two processes racing
        to create it end up sharing the winner's key. The public key is written
        to :data:`PUBLIC_KEY_FILE`.

        Args:
            data_dir: The data directory.

        Returns:
            The key.

        Raises:
            SigningKeyError: As for :meth:`load`, or the file cannot be created.

        .. versionadded:: 0.1
        """
        directory = Path(data_dir)
        path = directory / PRIVATE_KEY_FILE
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise SigningKeyError(directory, exc.strerror or str(exc)) from None
        if not path.exists():
            key = cls.generate()
            pem = key._private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process won the race: use its key
            except OSError as exc:
                raise SigningKeyError(path, exc.strerror or str(exc)) from None
            else:
                try:
                    os.fchmod(fd, 0o600)  # in case the umask or ACLs widened it
                    os.write(fd, pem)
                    os.fsync(fd)
                finally:
                    os.close(fd)
        key = cls.load(directory)
        public_path = directory / PUBLIC_KEY_FILE
        pem_text = public_key_pem(key.public_key)
        try:
            current = public_path.read_text("ascii") if public_path.exists() else None
            if current != pem_text:
                tmp = public_path.with_name(public_path.name + f".{os.getpid()}.tmp")
                tmp.write_text(pem_text, "ascii")
                os.replace(tmp, public_path)
        except OSError as exc:
            raise SigningKeyError(public_path, exc.strerror or str(exc)) from None
        return key

    def sign(self, message: bytes) -> bytes:
        """Return the DER ECDSA P-256/SHA-256 signature (RFC 6979 nonce) of ``message``.

        .. versionadded:: 0.1
        """
        return self._private_key.sign(message, _ALGORITHM)

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Return whether ``signature`` signs ``message`` under this key's public key.

        .. versionadded:: 0.1
        """
        return verify_signature(self.public_key, signature, message)
