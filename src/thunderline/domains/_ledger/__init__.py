"""The Vault's ledger and the canonical JSON it hashes: an internal package of ``domains``.

Its public names are re-exported by :mod:`thunderline.domains`; import them from
there. The modules, each importing only those above it:

* ``_canonical``: canonical JSON (RFC 8785) of events, the bytes every hash and
  signature covers; also used by ``domains._event`` for ids and sizes.
* ``_signing``: the ECDSA P-256 signing key of a ledger, key files and signatures.
* ``_core``: the record format and hash chain, signed heads, verification,
  :class:`LedgerBackend` (what both stores share), ``open_ledger`` and
  ``AsyncLedger`` (the format is described in its docstring).
* ``_sqlite`` and ``_postgres``: the two stores, opened through ``open_ledger``
  by path or by ``postgresql://`` URL.

This file imports nothing, so ``domains._event`` can use ``_canonical`` while
``_core`` uses ``domains._event``.
"""
