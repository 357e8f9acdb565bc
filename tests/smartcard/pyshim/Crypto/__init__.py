"""Crypto -> Cryptodome, for vicc (tests/smartcard/vicc.py puts this directory on sys.path).

vsmartcard's vicc imports PyCrypto's package name `Crypto`; Debian's python3-pycryptodome
installs the same library as `Cryptodome`. Submodules (Crypto.Cipher.DES3, Crypto.Hash.SHA...)
are found in Cryptodome's directory through __path__.
"""
from Cryptodome import *  # noqa: F401,F403
import Cryptodome as _cryptodome

__path__ = list(_cryptodome.__path__)
__version__ = _cryptodome.__version__
version_info = _cryptodome.version_info
