"""Independent SCEP (RFC 8894) message builder and parser for tests.

Built only on asn1crypto (ASN.1/CMS structures) and cryptography (RSA, hashes,
symmetric ciphers), deliberately sharing no code or tooling with p11enroll, so a
misunderstanding of the protocol cannot hide on both sides.

Builders return DER bytes.  Certificates may be passed as
cryptography.x509.Certificate objects or as DER bytes; keys as cryptography
private-key objects.  Randomness (nonces, content-encryption keys, IVs) can be
made deterministic with an `rng` argument (a random.Random instance); RSA
PKCS#1 v1.5 padding in key transport always uses the OS RNG.

Main API
    certrep(...)             CertRep pkiMessage (SUCCESS / FAILURE / PENDING)
    pkcsreq(...)             PKCSReq / RenewalReq pkiMessage
    certpoll(...)            CertPoll (GetCertInitial) pkiMessage
    pkimessage(...)          any pkiMessage (generic)
    degenerate_certs(certs)  certs-only SignedData ContentInfo (order preserved)
    envelope(...)            EnvelopedData ContentInfo
    signed_data(...)         SignedData ContentInfo with one RSA signer
    parse_pkimessage(der, ra_key=None, ...)   verify + decrypt + decode
    parse_degenerate(der)    list of certificate DERs, in encoded order
    decrypt_envelope(der, key, cert=None)     plaintext bytes
"""

import datetime
import hashlib
import os

from asn1crypto import algos, cms, core, csr as asn1csr, parser as asn1parser, x509 as asn1x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, padding as sympadding, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import keypool

# ---------------------------------------------------------------------------
# SCEP constants (RFC 8894 section 3.2.1)

OID_TRANSACTION_ID = "2.16.840.1.113733.1.9.7"
OID_MESSAGE_TYPE = "2.16.840.1.113733.1.9.2"
OID_PKI_STATUS = "2.16.840.1.113733.1.9.3"
OID_FAIL_INFO = "2.16.840.1.113733.1.9.4"
OID_SENDER_NONCE = "2.16.840.1.113733.1.9.5"
OID_RECIPIENT_NONCE = "2.16.840.1.113733.1.9.6"

MSG_CERTREP = "3"
MSG_RENEWALREQ = "17"
MSG_PKCSREQ = "19"
MSG_CERTPOLL = "20"
MSG_GETCERT = "21"
MSG_GETCRL = "22"

STATUS_SUCCESS = "0"
STATUS_FAILURE = "2"
STATUS_PENDING = "3"

FAIL_BAD_ALG = "0"
FAIL_BAD_MESSAGE_CHECK = "1"
FAIL_BAD_REQUEST = "2"
FAIL_BAD_TIME = "3"
FAIL_BAD_CERT_ID = "4"

_SCEP_ATTRS = {
    OID_TRANSACTION_ID: ("scep_transaction_id", "printable"),
    OID_MESSAGE_TYPE: ("scep_message_type", "printable"),
    OID_PKI_STATUS: ("scep_pki_status", "printable"),
    OID_FAIL_INFO: ("scep_fail_info", "printable"),
    OID_SENDER_NONCE: ("scep_sender_nonce", "octets"),
    OID_RECIPIENT_NONCE: ("scep_recipient_nonce", "octets"),
}


class SetOfPrintableString(core.SetOf):
    _child_spec = core.PrintableString


class SetOfOctetString(core.SetOf):
    _child_spec = core.OctetString


def _register_oids():
    """Teach asn1crypto the SCEP attribute OIDs (idempotent)."""
    cms.CMSAttributeType("content_type")  # builds _reverse_map
    for oid, (name, kind) in _SCEP_ATTRS.items():
        cms.CMSAttributeType._map[oid] = name
        cms.CMSAttributeType._reverse_map[name] = oid
        cms.CMSAttribute._oid_specs[name] = (
            SetOfPrintableString if kind == "printable" else SetOfOctetString)


_register_oids()


class ScepError(Exception):
    """A pkiMessage failed to parse/verify/decrypt.

    fail_info is the failInfo a responder would answer with ("0".."4")."""

    def __init__(self, msg, fail_info=FAIL_BAD_MESSAGE_CHECK):
        super().__init__(msg)
        self.fail_info = fail_info


# ---------------------------------------------------------------------------
# helpers

_DIGESTS = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
    "md5": hashes.MD5,
}

# cipher name -> (asn1crypto algorithm name, key length, block size)
_CIPHERS = {
    "aes128": ("aes128_cbc", 16, 16),
    "aes192": ("aes192_cbc", 24, 16),
    "aes256": ("aes256_cbc", 32, 16),
    "des3": ("tripledes_3key", 24, 8),
    "des": ("des", 8, 8),
}


def _rand(rng, n):
    if rng is None:
        return os.urandom(n)
    return bytes(rng.getrandbits(8) for _ in range(n))


def _des_parity(key):
    """Set odd parity on each DES key byte (OpenSSL ignores parity; be tidy)."""
    out = bytearray()
    for b in key:
        b &= 0xFE
        if bin(b).count("1") % 2 == 0:
            b |= 1
        out.append(b)
    return bytes(out)


def _tdes_class():
    try:  # cryptography >= 43 moved TripleDES to decrepit
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
        return TripleDES
    except ImportError:
        return algorithms.TripleDES


def _sym_algorithm(name, key):
    if name.startswith("aes"):
        return algorithms.AES(key)
    # single DES == 3DES-EDE with k1 = k2 = k3; cryptography accepts 8-byte keys
    return _tdes_class()(key)


def sym_encrypt(name, key, iv, plaintext):
    """CBC encrypt with PKCS#5/7 padding."""
    block = _CIPHERS[name][2]
    padder = sympadding.PKCS7(block * 8).padder()
    data = padder.update(plaintext) + padder.finalize()
    enc = Cipher(_sym_algorithm(name, key), modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def sym_decrypt(name, key, iv, ciphertext):
    block = _CIPHERS[name][2]
    dec = Cipher(_sym_algorithm(name, key), modes.CBC(iv)).decryptor()
    data = dec.update(ciphertext) + dec.finalize()
    unpadder = sympadding.PKCS7(block * 8).unpadder()
    return unpadder.update(data) + unpadder.finalize()


def cert_der(cert):
    """DER bytes of a certificate given as cryptography object, asn1crypto object or DER."""
    if isinstance(cert, (bytes, bytearray)):
        return bytes(cert)
    if isinstance(cert, x509.Certificate):
        return cert.public_bytes(serialization.Encoding.DER)
    if isinstance(cert, asn1x509.Certificate):
        return cert.dump()
    raise TypeError("unsupported certificate type %r" % type(cert))


def load_cert(data):
    """cryptography Certificate from DER or PEM bytes, or a file path."""
    if isinstance(data, str):
        with open(data, "rb") as f:
            data = f.read()
    if data.lstrip().startswith(b"-----"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def load_key(data, password=None):
    """cryptography private key from PEM/DER bytes or a file path: one of the tests' own
    (not checked again by OpenSSL: keypool.load_own_key)."""
    if isinstance(data, str):
        with open(data, "rb") as f:
            data = f.read()
    return keypool.load_own_key(data, password)


def _asn1_cert(cert):
    return asn1x509.Certificate.load(cert_der(cert))


def _issuer_and_serial(cert):
    c = _asn1_cert(cert)
    return cms.IssuerAndSerialNumber({
        "issuer": c["tbs_certificate"]["issuer"],
        "serial_number": c["tbs_certificate"]["serial_number"],
    })


def _der_header(tag, length):
    if length < 0x80:
        return bytes([tag, length])
    lb = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(lb)]) + lb


def _ordered_cert_set(certs):
    """A CertificateSet whose encoding keeps the given order.

    DER would sort a SET OF; real servers (and RFC 8894 examples) do not, and
    clients must not depend on order, so tests need to control it."""
    raw = b"".join(cert_der(c) for c in certs)
    return cms.CertificateSet.load(_der_header(0x31, len(raw)) + raw)


def _attr(oid, values):
    """CMSAttribute with an explicit SET OF values (asn1 objects)."""
    name = _SCEP_ATTRS.get(oid, (oid,))[0]
    if oid in _SCEP_ATTRS:
        spec = SetOfPrintableString if _SCEP_ATTRS[oid][1] == "printable" else SetOfOctetString
        return cms.CMSAttribute({"type": name, "values": spec(values)})
    return cms.CMSAttribute({"type": oid, "values": values})


def scep_attributes(txid=None, message_type=None, sender_nonce=None,
                    recipient_nonce=None, status=None, fail_info=None):
    """List of SCEP CMSAttributes; None values are left out."""
    attrs = []
    if txid is not None:
        attrs.append(_attr(OID_TRANSACTION_ID, [core.PrintableString(txid)]))
    if message_type is not None:
        attrs.append(_attr(OID_MESSAGE_TYPE, [core.PrintableString(str(message_type))]))
    if status is not None:
        attrs.append(_attr(OID_PKI_STATUS, [core.PrintableString(str(status))]))
    if fail_info is not None:
        attrs.append(_attr(OID_FAIL_INFO, [core.PrintableString(str(fail_info))]))
    if sender_nonce is not None:
        attrs.append(_attr(OID_SENDER_NONCE, [core.OctetString(sender_nonce)]))
    if recipient_nonce is not None:
        attrs.append(_attr(OID_RECIPIENT_NONCE, [core.OctetString(recipient_nonce)]))
    return attrs


# ---------------------------------------------------------------------------
# builders


def degenerate_certs(certs, crls=None):
    """Degenerate ("certs-only") SignedData ContentInfo, DER.

    certs: iterable of certificates (order preserved in the encoding);
    crls: optional iterable of CRL DERs.  No signers, no digest algorithms,
    eContentType id-data with no eContent."""
    sd = {
        "version": "v1",
        "digest_algorithms": cms.DigestAlgorithms([]),
        "encap_content_info": cms.ContentInfo({"content_type": "data"}),
        "certificates": _ordered_cert_set(list(certs)),
        "signer_infos": cms.SignerInfos([]),
    }
    if crls:
        raw = b"".join(bytes(c) for c in crls)
        sd["crls"] = cms.RevocationInfoChoices.load(_der_header(0x31, len(raw)) + raw)
    return cms.ContentInfo({"content_type": "signed_data",
                            "content": cms.SignedData(sd)}).dump()


def envelope(content, recipient_cert, cipher="aes128", rng=None, key=None, iv=None):
    """EnvelopedData ContentInfo (DER) of `content` for one RSA recipient.

    KeyTransRecipientInfo v0 with issuerAndSerialNumber, rsaEncryption
    (PKCS#1 v1.5) key transport; cipher one of aes128 (default), aes192,
    aes256, des3 (DES-EDE3-CBC), des (DES-CBC, legacy)."""
    algo_name, klen, block = _CIPHERS[cipher]
    if key is None:
        key = _rand(rng, klen)
        if cipher in ("des", "des3"):
            key = _des_parity(key)
    if iv is None:
        iv = _rand(rng, block)
    ciphertext = sym_encrypt(cipher, key, iv, content)
    rcert = load_cert(cert_der(recipient_cert))
    enc_key = rcert.public_key().encrypt(key, padding.PKCS1v15())
    ri = cms.RecipientInfo(name="ktri", value=cms.KeyTransRecipientInfo({
        "version": "v0",
        "rid": cms.RecipientIdentifier(name="issuer_and_serial_number",
                                       value=_issuer_and_serial(recipient_cert)),
        "key_encryption_algorithm": cms.KeyEncryptionAlgorithm({
            "algorithm": "rsaes_pkcs1v15", "parameters": core.Null()}),
        "encrypted_key": enc_key,
    }))
    ed = cms.EnvelopedData({
        "version": "v0",
        "recipient_infos": cms.RecipientInfos([ri]),
        "encrypted_content_info": cms.EncryptedContentInfo({
            "content_type": "data",
            "content_encryption_algorithm": algos.EncryptionAlgorithm({
                "algorithm": algo_name, "parameters": core.OctetString(iv)}),
            "encrypted_content": ciphertext,
        }),
    })
    return cms.ContentInfo({"content_type": "enveloped_data", "content": ed}).dump()


def signed_data(content, signer_cert, signer_key, attributes, digest="sha256",
                include_signer_cert=True, extra_certs=(), signing_time=None,
                signature_oid="rsaEncryption", empty_content=False,
                tamper=None, econtent_type="data"):
    """SignedData ContentInfo (DER) with one RSA PKCS#1 v1.5 signer.

    content: eContent bytes, or None for no eContent (messageDigest is then the
      digest of the empty string, as for detached content).  empty_content=True
      with content None encodes an empty OCTET STRING eContent instead (what
      some servers send for FAILURE/PENDING).
    attributes: extra signed CMSAttributes (e.g. scep_attributes(...));
      contentType (data) and messageDigest are always added, signingTime when
      signing_time (a datetime) is given.
    signature_oid: "rsaEncryption" (what OpenSSL writes) or "withHash"
      (sha256WithRSAEncryption etc.).
    tamper: optional dict for negative fixtures, applied after signing:
      {"signature": fn(bytes)->bytes, "content": fn(bytes)->bytes}.
    econtent_type: the eContentType (and signed contentType), "data" unless a
      negative fixture wants another (e.g. "signed_data")."""
    if content is None and empty_content:
        content = b""
        has_content = True
    else:
        has_content = content is not None
    body = content if content is not None else b""
    md = hashlib.new(digest, body).digest()
    attrs = [
        cms.CMSAttribute({"type": "content_type", "values": [cms.ContentType(econtent_type)]}),
    ]
    if signing_time is not None:
        if signing_time.tzinfo is None:
            signing_time = signing_time.replace(tzinfo=datetime.timezone.utc)
        attrs.append(cms.CMSAttribute({"type": "signing_time",
                                       "values": [cms.Time(name="utc_time",
                                                           value=core.UTCTime(signing_time))]}))
    attrs.extend(attributes)
    attrs.append(cms.CMSAttribute({"type": "message_digest", "values": [md]}))
    signed_attrs = cms.CMSAttributes(attrs)
    # DER of the attributes as SET OF (tag 0x31) is what gets signed
    to_sign = signed_attrs.dump(force=True)
    assert to_sign[0] == 0x31
    sig = signer_key.sign(to_sign, padding.PKCS1v15(), _DIGESTS[digest]())

    if signature_oid == "rsaEncryption":
        sig_alg = algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15",
                                               "parameters": core.Null()})
    else:
        sig_alg = algos.SignedDigestAlgorithm({"algorithm": digest + "_rsa",
                                               "parameters": core.Null()})
    if tamper and "signature" in tamper:
        sig = tamper["signature"](sig)
    if tamper and "content" in tamper and has_content:
        content = tamper["content"](body)

    si = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier(name="issuer_and_serial_number",
                                    value=_issuer_and_serial(signer_cert)),
        "digest_algorithm": algos.DigestAlgorithm({"algorithm": digest}),
        "signed_attrs": signed_attrs,
        "signature_algorithm": sig_alg,
        "signature": sig,
    })
    eci = {"content_type": econtent_type}
    if has_content:
        eci["content"] = core.OctetString(content)
    certs = ([signer_cert] if include_signer_cert else []) + list(extra_certs)
    sd = {
        "version": "v1",
        "digest_algorithms": cms.DigestAlgorithms([algos.DigestAlgorithm({"algorithm": digest})]),
        "encap_content_info": cms.ContentInfo(eci),
        "signer_infos": cms.SignerInfos([si]),
    }
    if certs:
        sd["certificates"] = _ordered_cert_set(certs)
    return cms.ContentInfo({"content_type": "signed_data",
                            "content": cms.SignedData(sd)}).dump()


def pkimessage(signer_cert, signer_key, message_type, txid, sender_nonce,
               inner=None, recipient_cert=None, cipher="aes128", digest="sha256",
               recipient_nonce=None, status=None, fail_info=None,
               include_signer_cert=True, extra_certs=(), signing_time=None,
               signature_oid="rsaEncryption", rng=None, extra_attributes=(),
               omit=(), empty_content=False, tamper=None, econtent_type="data"):
    """Generic pkiMessage: SignedData(data = EnvelopedData(inner)).

    inner None -> no pkcsPKIEnvelope (no eContent).  omit: names among
    "txid", "message_type", "sender_nonce", "recipient_nonce", "status" to
    leave out regardless of the values given (negative tests)."""
    if inner is not None:
        if recipient_cert is None:
            raise ValueError("inner content needs a recipient_cert")
        content = envelope(inner, recipient_cert, cipher=cipher, rng=rng)
    else:
        content = None
    attrs = scep_attributes(
        txid=None if "txid" in omit else txid,
        message_type=None if "message_type" in omit else message_type,
        sender_nonce=None if "sender_nonce" in omit else sender_nonce,
        recipient_nonce=None if "recipient_nonce" in omit else recipient_nonce,
        status=None if "status" in omit else status,
        fail_info=fail_info)
    attrs.extend(extra_attributes)
    return signed_data(content, signer_cert, signer_key, attrs, digest=digest,
                       include_signer_cert=include_signer_cert,
                       extra_certs=extra_certs, signing_time=signing_time,
                       signature_oid=signature_oid, empty_content=empty_content,
                       tamper=tamper, econtent_type=econtent_type)


def certrep(signer_cert, signer_key, txid, recipient_nonce, sender_nonce, status,
            fail_info=None, issued_certs=None, recipient_cert=None, cipher="aes128",
            digest="sha256", include_signer_cert=True, message_type=MSG_CERTREP,
            rng=None, signing_time=None, signature_oid="rsaEncryption",
            extra_certs=(), omit=(), empty_content=False, tamper=None,
            extra_attributes=()):
    """CertRep pkiMessage, DER.

    status "0" SUCCESS: issued_certs (list, leaf first; may be empty) go into a
      degenerate SignedData, enveloped to recipient_cert (the request signer).
    status "2" FAILURE (fail_info "0".."4") / "3" PENDING: no eContent
      (empty_content=True: an empty OCTET STRING instead).
    recipient_nonce None leaves the attribute out; sender_nonce None makes a
    fresh 16-byte one (from rng)."""
    if sender_nonce is None:
        sender_nonce = _rand(rng, 16)
    status = str(status)
    inner = None
    if status == STATUS_SUCCESS:
        inner = degenerate_certs(issued_certs or [])
    return pkimessage(signer_cert, signer_key, message_type, txid, sender_nonce,
                      inner=inner, recipient_cert=recipient_cert, cipher=cipher,
                      digest=digest, recipient_nonce=recipient_nonce, status=status,
                      fail_info=fail_info, include_signer_cert=include_signer_cert,
                      extra_certs=extra_certs, signing_time=signing_time,
                      signature_oid=signature_oid, rng=rng, omit=omit,
                      empty_content=empty_content, tamper=tamper,
                      extra_attributes=extra_attributes)


def pkcsreq(signer_cert, signer_key, ra_cert, csr_der, txid, sender_nonce=None,
            cipher="aes128", digest="sha256", message_type=MSG_PKCSREQ, rng=None,
            **kw):
    """PKCSReq (19) or RenewalReq (17) pkiMessage, DER: the CSR enveloped to ra_cert."""
    if sender_nonce is None:
        sender_nonce = _rand(rng, 16)
    return pkimessage(signer_cert, signer_key, message_type, txid, sender_nonce,
                      inner=bytes(csr_der), recipient_cert=ra_cert, cipher=cipher,
                      digest=digest, rng=rng, **kw)


class IssuerAndSubject(core.Sequence):
    _fields = [("issuer", asn1x509.Name), ("subject", asn1x509.Name)]


def certpoll(signer_cert, signer_key, ra_cert, issuer_name_der, subject_name_der,
             txid, sender_nonce=None, cipher="aes128", digest="sha256", rng=None, **kw):
    """CertPoll (GetCertInitial, 20) pkiMessage with IssuerAndSubject."""
    if sender_nonce is None:
        sender_nonce = _rand(rng, 16)
    ias = IssuerAndSubject({"issuer": asn1x509.Name.load(issuer_name_der),
                            "subject": asn1x509.Name.load(subject_name_der)}).dump()
    return pkimessage(signer_cert, signer_key, MSG_CERTPOLL, txid, sender_nonce,
                      inner=ias, recipient_cert=ra_cert, cipher=cipher, digest=digest,
                      rng=rng, **kw)


def csr(key, common_name, challenge=None, digest="sha256"):
    """PKCS#10 CSR DER with optional challengePassword (PrintableString)."""
    from cryptography.x509.oid import NameOID, AttributeOID
    b = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
    if challenge is not None:
        b = b.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode(),
                            _tag=x509.name._ASN1Type.PrintableString)
    return b.sign(key, _DIGESTS[digest]()).public_bytes(serialization.Encoding.DER)


# ---------------------------------------------------------------------------
# parsing


def parse_degenerate(der):
    """Certificate DERs of a (degenerate) SignedData ContentInfo, in encoded order."""
    ci = cms.ContentInfo.load(der)
    if ci["content_type"].native != "signed_data":
        raise ScepError("not SignedData: %s" % ci["content_type"].native)
    sd = ci["content"]
    certs = sd["certificates"]
    if not certs:
        return []
    out = []
    for c in certs:
        if c.name != "certificate":
            raise ScepError("non-X.509 certificate choice %s" % c.name)
        out.append(c.chosen.dump())
    return out


def _tlvs(data):
    """(class, method, tag, content) of each BER element in data."""
    out = []
    while data:
        cls, method, tag, header, content, trailer = asn1parser.parse(data)
        out.append((cls, method, tag, content))
        data = data[len(header) + len(content) + len(trailer):]
    return out


def _ber_octets(method, content):
    """Contents of a primitive or constructed (chunked) OCTET STRING."""
    if method == 0:
        return content
    out = b""
    for cls, m, tag, chunk in _tlvs(content):
        if cls != 0 or tag != 4:
            raise ScepError("constructed OCTET STRING holds a non-OCTET STRING")
        out += _ber_octets(m, chunk)
    return out


def _encrypted_content_ber(eci):
    """encryptedContent [0] of an EncryptedContentInfo, also when constructed.

    asn1crypto accepts a constructed string only with indefinite length; CMS
    (BER) also allows definite-length constructed encodings."""
    try:
        for cls, method, tag, content in _tlvs(eci.contents):
            if cls == 2 and tag == 0:
                return _ber_octets(method, content)
    except ValueError as e:
        raise ScepError("malformed encryptedContent: %s" % e)
    return None


def decrypt_envelope(der, key, cert=None):
    """Decrypt an EnvelopedData ContentInfo with an RSA key.

    When cert is given the KeyTransRecipientInfo must name it (issuer+serial);
    otherwise every ktri is tried.  Returns (plaintext, cipher_name)."""
    ci = cms.ContentInfo.load(der)
    if ci["content_type"].native != "enveloped_data":
        raise ScepError("not EnvelopedData: %s" % ci["content_type"].native)
    ed = ci["content"]
    want = _issuer_and_serial(cert).dump() if cert is not None else None
    cek = None
    for ri in ed["recipient_infos"]:
        if ri.name != "ktri":
            continue
        ktri = ri.chosen
        rid = ktri["rid"]
        if want is not None and (rid.name != "issuer_and_serial_number"
                                 or rid.chosen.dump(force=True) != want):
            continue
        if ktri["key_encryption_algorithm"]["algorithm"].native != "rsaes_pkcs1v15":
            raise ScepError("unsupported key transport %s"
                            % ktri["key_encryption_algorithm"]["algorithm"].native,
                            FAIL_BAD_ALG)
        try:
            cek = key.decrypt(ktri["encrypted_key"].native, padding.PKCS1v15())
            break
        except ValueError:
            continue
    if cek is None:
        raise ScepError("no recipient info decryptable with this key")
    eci = ed["encrypted_content_info"]
    alg = eci["content_encryption_algorithm"]
    names = {v[0]: k for k, v in _CIPHERS.items()}
    aname = alg["algorithm"].native
    if aname not in names:
        raise ScepError("unsupported content cipher %s" % aname, FAIL_BAD_ALG)
    cname = names[aname]
    if len(cek) != _CIPHERS[cname][1]:
        raise ScepError("content key has wrong length %d" % len(cek))
    iv = alg["parameters"].native
    try:
        ct = eci["encrypted_content"].native
    except ValueError:  # constructed definite-length [0] (BER, e.g. Go's pkcs7)
        ct = _encrypted_content_ber(eci)
    if ct is None:
        raise ScepError("no encrypted content")
    try:
        return sym_decrypt(cname, cek, iv, ct), cname
    except ValueError as e:
        raise ScepError("content decryption failed: %s" % e)


def _find_signer(sid, certs):
    for c in certs:
        ac = _asn1_cert(c)
        if sid.name == "issuer_and_serial_number":
            if (ac["tbs_certificate"]["issuer"].dump(force=True) == sid.chosen["issuer"].dump(force=True)
                    and ac.serial_number == sid.chosen["serial_number"].native):
                return cert_der(c)
        else:
            if ac.key_identifier == sid.chosen.native:
                return cert_der(c)
    return None


def _attr_values(signed_attrs):
    out = {}
    for a in signed_attrs:
        oid = a["type"].dotted
        if oid in out:
            raise ScepError("duplicate attribute %s" % oid)
        out[oid] = a["values"]
    return out


def _single(values, oid):
    if len(values) != 1:
        raise ScepError("attribute %s must have exactly one value" % oid)
    return values[0]


def parse_pkimessage(der, ra_key=None, ra_cert=None, extra_certs=(), verify=True):
    """Parse, verify and (when ra_key is given) decrypt a pkiMessage.

    extra_certs: certificates to search for the signer besides those in the
      SignedData (e.g. a GetCACert bundle for CertReps without signer cert).
    verify: raise ScepError when the signature or messageDigest is wrong
      (otherwise just report it in the result).

    Returns a dict:
      txid, message_type, status, fail_info (str or None),
      sender_nonce, recipient_nonce (bytes or None),
      signer_cert (DER or None), certs (DERs in the SignedData),
      digest (e.g. "sha256"), signature_algorithm, content_type (eContentType),
      econtent (bytes or None), econtent_present (bool),
      signature_ok, digest_ok (bool), signing_time,
      envelope (DER or None), cipher (name or None), inner (decrypted bytes),
      csr_der (PKCSReq/RenewalReq), issuer_and_subject (CertPoll: (issuer DER, subject DER)),
      issued_certs (CertRep SUCCESS: DERs from the degenerate SignedData),
      signed_attrs_der (SET encoding), raw_attrs (oid -> asn1 values)."""
    try:
        ci = cms.ContentInfo.load(der)
        ctype = ci["content_type"].native
    except Exception as e:
        raise ScepError("not a ContentInfo: %s" % e)
    if ctype != "signed_data":
        raise ScepError("not SignedData: %s" % ctype)
    try:
        sd = ci["content"]
        sd.native  # force a full parse: truncated/garbled input fails here
    except Exception as e:
        raise ScepError("malformed SignedData: %s" % e)

    res = {}
    certs = [c.chosen.dump() for c in (sd["certificates"] or []) if c.name == "certificate"]
    res["certs"] = certs
    eci = sd["encap_content_info"]
    res["content_type"] = eci["content_type"].dotted
    c = eci["content"]
    if isinstance(c, core.Void):
        econtent = None
    elif isinstance(c, core.OctetString):
        econtent = c.native
    elif isinstance(c, core.ParsableOctetString):
        econtent = c.__bytes__()
    else:  # Any / unexpected type: the value must be an OCTET STRING
        try:
            econtent = core.OctetString.load(c.dump()).native
        except Exception as e:
            raise ScepError("eContent is not an OCTET STRING: %s" % e)
    res["econtent_present"] = econtent is not None
    res["econtent"] = econtent

    sis = sd["signer_infos"]
    if len(sis) != 1:
        raise ScepError("expected exactly one SignerInfo, got %d" % len(sis))
    si = sis[0]
    digest = si["digest_algorithm"]["algorithm"].native
    res["digest"] = digest
    res["signature_algorithm"] = si["signature_algorithm"]["algorithm"].native
    signer = _find_signer(si["sid"], certs + [cert_der(c) for c in extra_certs])
    res["signer_cert"] = signer

    sattrs = si["signed_attrs"]
    if not sattrs:
        raise ScepError("no signed attributes")
    attrs_der = b"\x31" + sattrs.dump()[1:]
    res["signed_attrs_der"] = attrs_der
    vals = _attr_values(sattrs)
    res["raw_attrs"] = vals

    # messageDigest
    md_vals = vals.get("1.2.840.113549.1.9.4")
    if digest not in _DIGESTS:
        raise ScepError("unsupported digest %s" % digest, FAIL_BAD_ALG)
    actual = hashlib.new(digest, econtent or b"").digest()
    res["digest_ok"] = md_vals is not None and _single(md_vals, "messageDigest").native == actual
    ct_vals = vals.get("1.2.840.113549.1.9.3")
    res["content_type_attr_ok"] = (ct_vals is not None and
                                   _single(ct_vals, "contentType").dotted == res["content_type"])

    # signature
    sig_ok = False
    if signer is not None:
        pub = load_cert(signer).public_key()
        if isinstance(pub, rsa.RSAPublicKey):
            try:
                pub.verify(si["signature"].native, attrs_der, padding.PKCS1v15(),
                           _DIGESTS[digest]())
                sig_ok = True
            except InvalidSignature:
                sig_ok = False
    res["signature_ok"] = sig_ok
    if verify:
        if signer is None:
            raise ScepError("signer certificate not found", FAIL_BAD_CERT_ID)
        if not sig_ok:
            raise ScepError("bad signature")
        if not res["digest_ok"]:
            raise ScepError("messageDigest mismatch")
        if not res["content_type_attr_ok"]:
            raise ScepError("contentType attribute mismatch")

    def pstr(oid):
        v = vals.get(oid)
        if v is None:
            return None
        return _single(v, oid).native

    def octs(oid):
        v = vals.get(oid)
        if v is None:
            return None
        return _single(v, oid).native

    res["txid"] = pstr(OID_TRANSACTION_ID)
    res["message_type"] = pstr(OID_MESSAGE_TYPE)
    res["status"] = pstr(OID_PKI_STATUS)
    res["fail_info"] = pstr(OID_FAIL_INFO)
    res["sender_nonce"] = octs(OID_SENDER_NONCE)
    res["recipient_nonce"] = octs(OID_RECIPIENT_NONCE)
    st = vals.get("1.2.840.113549.1.9.5")
    res["signing_time"] = _single(st, "signingTime").native if st is not None else None

    res["envelope"] = econtent if econtent else None
    res["cipher"] = None
    res["inner"] = None
    res["csr_der"] = None
    res["issuer_and_subject"] = None
    res["issued_certs"] = None
    if res["envelope"] and ra_key is not None:
        inner, cname = decrypt_envelope(res["envelope"], ra_key, ra_cert)
        res["inner"], res["cipher"] = inner, cname
        mt = res["message_type"]
        if mt in (MSG_PKCSREQ, MSG_RENEWALREQ):
            try:
                asn1csr.CertificationRequest.load(inner).native
            except Exception as e:
                raise ScepError("envelope does not hold a CSR: %s" % e, FAIL_BAD_REQUEST)
            res["csr_der"] = inner
        elif mt == MSG_CERTPOLL:
            ias = IssuerAndSubject.load(inner)
            res["issuer_and_subject"] = (ias["issuer"].dump(), ias["subject"].dump())
        elif mt == MSG_CERTREP:
            res["issued_certs"] = parse_degenerate(inner)
    return res
