"""keypool.py: RSA-2048 keys made beforehand, for the test doubles and their tests.

Generating an RSA-2048 key costs Debian 12's python3-cryptography (38.0.4) about 0.24 s
of CPU. The doubles made 140 of them in one run of their own tests and 56 in one
integration pass (two-tier and next CAs, strangers, rogue signers): half the CPU of
`make doubles`. tests/doubles/keypool.pem holds 96 keys made once with

    for i in $(seq 96); do openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048; done

rsa_key() hands them out in turn. Once they are used up, or for another size, it
generates a key as before: a longer run is slower, never wrong. These keys are test
material in a public repository: nothing but the tests may use them.

Keys are distinct where a test needs them to be (a rogue signer is not the CA): every key
handed out under one P11E_KEYPOOL_STATE file is a different one, across processes (the
file is a counter, locked while it is read and advanced). run_tests.py gives each test
class (its process and the servers it starts) a file of its own; the integration tests,
one beside the CA caches of their run (lib.sh). Without that variable every key is
generated: a test run by hand (`python3 -m unittest test_scep_responder`) and the servers
it starts share no counter, and two of them counting from the pool's first key each would
hand out the same key as two (a "fresh" key that is the requester's own).

load_own_key(): reading an RSA key, OpenSSL 3's RSA_check_key tests its primes, about
40 ms a key. The doubles' own keys (this pool's, the ones a responder wrote into its
directory) are not checked again.
"""

import fcntl
import os
import re

from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

POOL_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "keypool.pem")
POOL_BITS = 2048
_PEM_RE = re.compile(rb"-----BEGIN PRIVATE KEY-----\n.*?-----END PRIVATE KEY-----\n", re.S)

_pool = None        # the pool's PEM blocks, read at the first draw


def _blocks():
    global _pool
    if _pool is None:
        try:
            with open(POOL_FILE, "rb") as f:
                _pool = _PEM_RE.findall(f.read())
        except OSError:
            _pool = []
    return _pool


def _take_index():
    """The next index to hand out under P11E_KEYPOOL_STATE's counter; None without it."""
    state = os.environ.get("P11E_KEYPOOL_STATE")
    if not state:
        return None
    os.makedirs(os.path.dirname(os.path.abspath(state)), exist_ok=True)
    with open(state, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        text = f.read().strip()
        n = int(text) if text else 0
        f.seek(0)
        f.truncate()
        f.write("%d\n" % (n + 1))
        f.flush()
    return n


def load_own_key(data, password=None):
    """A private key from PEM or DER bytes that the tests made themselves, without
    OpenSSL's RSA_check_key (cryptography >= 39: unsafe_skip_rsa_key_validation; 38,
    Debian 12's: the backend's flag for it, which its own tests use)."""
    load = (serialization.load_pem_private_key if data.lstrip().startswith(b"-----")
            else serialization.load_der_private_key)
    try:
        return load(data, password, unsafe_skip_rsa_key_validation=True)
    except TypeError:
        pass
    backend = default_backend()
    if not hasattr(backend, "_rsa_skip_check_key"):
        return load(data, password)
    old = backend._rsa_skip_check_key
    backend._rsa_skip_check_key = True
    try:
        return load(data, password)
    finally:
        backend._rsa_skip_check_key = old


def rsa_key(bits=POOL_BITS):
    """An RSA private key of `bits`, distinct from every other handed out under the same
    P11E_KEYPOOL_STATE: the pool's next, else (no such variable, the pool used up, another
    size) a new one."""
    if bits == POOL_BITS:
        blocks = _blocks()
        i = _take_index()
        if i is not None and i < len(blocks):
            return load_own_key(blocks[i])
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)
