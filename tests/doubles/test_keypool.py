"""Tests of keypool.py: the pre-made keys are sound, distinct, handed out once under a
state file (also across processes), and generated once used up or without a state file."""

import math
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import keypool  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding, rsa  # noqa: E402


def modulus(key):
    return key.public_key().public_numbers().n


class Pool(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.state = os.path.join(self.tmp.name, "sub", "keypool.count")
        self.old_env = os.environ.get("P11E_KEYPOOL_STATE")
        os.environ["P11E_KEYPOOL_STATE"] = self.state

    def tearDown(self):
        if self.old_env is None:
            os.environ.pop("P11E_KEYPOOL_STATE", None)
        else:
            os.environ["P11E_KEYPOOL_STATE"] = self.old_env
        self.tmp.cleanup()

    def test_every_key_is_a_sound_distinct_rsa_2048_key(self):
        blocks = keypool._blocks()
        self.assertEqual(96, len(blocks))
        seen = set()
        for block in blocks:
            key = keypool.load_own_key(block)
            self.assertIsInstance(key, rsa.RSAPrivateKey)
            self.assertEqual(2048, key.key_size)
            pn = key.private_numbers()
            n, e = pn.public_numbers.n, pn.public_numbers.e
            self.assertEqual(65537, e)
            self.assertEqual(n, pn.p * pn.q)
            lam = math.lcm(pn.p - 1, pn.q - 1)
            self.assertEqual(1, (pn.d * e) % lam)
            self.assertEqual(pn.dmp1, pn.d % (pn.p - 1))
            self.assertEqual(pn.dmq1, pn.d % (pn.q - 1))
            self.assertEqual(1, (pn.iqmp * pn.q) % pn.p)
            seen.add(n)
        self.assertEqual(len(blocks), len(seen), "a key is in the pool twice")

    def test_a_drawn_key_signs_and_verifies(self):
        key = keypool.rsa_key()
        sig = key.sign(b"data", padding.PKCS1v15(), hashes.SHA256())
        key.public_key().verify(sig, b"data", padding.PKCS1v15(), hashes.SHA256())

    def test_draws_under_one_state_file_differ_across_processes(self):
        code = ("import sys; sys.path.insert(0, %r); import keypool; "
                "print(keypool.rsa_key().public_key().public_numbers().n)" % HERE)
        mine = modulus(keypool.rsa_key())
        theirs = [int(subprocess.run([sys.executable, "-c", code], check=True,
                                     capture_output=True, text=True).stdout)
                  for _ in range(3)]
        self.assertEqual(4, len(set([mine] + theirs)))
        with open(self.state) as f:
            self.assertEqual("4", f.read().strip())

    def test_used_up_pool_generates(self):
        with _opened(self.state) as f:
            f.write("%d\n" % len(keypool._blocks()))
        pooled = {modulus(keypool.load_own_key(b)) for b in keypool._blocks()}
        key = keypool.rsa_key()
        self.assertEqual(2048, key.key_size)
        self.assertNotIn(modulus(key), pooled)

    def test_without_a_state_file_keys_are_generated(self):
        # A class run by hand, without run_tests.py: its servers would count from the pool's
        # first key too, so no key comes from the pool.
        os.environ.pop("P11E_KEYPOOL_STATE", None)
        pooled = {modulus(keypool.load_own_key(b)) for b in keypool._blocks()}
        key = keypool.rsa_key()
        self.assertEqual(2048, key.key_size)
        self.assertNotIn(modulus(key), pooled)

    def test_other_size_is_generated(self):
        key = keypool.rsa_key(1024)
        self.assertEqual(1024, key.key_size)
        self.assertFalse(os.path.exists(self.state), "a key of another size drew from the pool")


def _opened(path):
    """path open for writing, its directory made first."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return open(path, "w")


if __name__ == "__main__":
    unittest.main()
