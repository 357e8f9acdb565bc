#!/usr/bin/python3
"""Writes tests/data/ndes/*.html: Microsoft NDES MSCEP_ADMIN pages as clients meet them.

The shape follows the page NDES serves (Windows Server 2008 R2 and later): HTML
whose meta tag claims UTF-8 while the body is UTF-16LE without a byte-order mark,
CRLF line ends, the thumbprint and the challenge in <B> tags with spaces inside.
Deterministic: running it again gives the same bytes. Run from the repository root
or anywhere: the output goes beside this script.
"""
import os
import sys

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ndes")

CHALLENGE = "8CE317021F690069"
CHALLENGE32 = "3F8A1C5D9E0B27461A2B3C4D5E6F7081"
THUMBPRINT = "2A74C2A1 0E1F7C3D 50E2C1A9 8D4F1E62"

HEAD = (
    '<HTML><Head><Meta HTTP-Equiv="Content-Type" Content="text/html; charset=UTF-8">\r\n'
    "<Title>Network Device Enrollment Service</Title></Head>\r\n"
    "<Body BgColor=#FFFFFF><Font ID=locPageFont Face=\"Arial\">\r\n"
    "<Table Border=0 CellSpacing=0 CellPadding=4 Width=100% BgColor=#008080>\r\n"
    "<TR><TD><Font Face=\"Arial\" Color=#FFFFFF><LocID ID=locMSCertSrv>"
    "<Font Face=\"Arial\" Size=-1><B><I>Microsoft</I></B></Font><Br>"
    "<Font Face=\"Arial\" Size=+2><B>Network Device Enrollment Service</B></Font>"
    "</LocID></Font></TD></TR>\r\n"
    "</Table>\r\n"
    "<P ID=locPageDesc> Network Device Enrollment Service allows you to obtain certificates "
    "for routers or other network devices using the Simple Certificate Enrollment Protocol "
    "(SCEP). </P>\r\n"
)
TAIL = "<P></Font></Body></HTML>\r\n"


def success(challenge=CHALLENGE, expiry="will expire within 60 minutes", thumbprint=THUMBPRINT):
    return (
        HEAD
        + "<P> To complete certificate enrollment for your network device you will need the "
        "following information:\r\n"
        f"<P> The thumbprint (hash value) for the CA certificate is: <B> {thumbprint} </B>\r\n"
        f"<P> The enrollment challenge password is: <B> {challenge} </B>\r\n"
        f"<P> This password can be used only once and {expiry}.\r\n"
        "<P> Each enrollment requires a new challenge password. You can refresh this web page "
        "to obtain a new challenge password.\r\n"
        "<P> For more information see <A HREF=http://go.microsoft.com/fwlink/?LinkId=67852>"
        "Using Network Device Enrollment Service </A>.\r\n" + TAIL
    )


def message(text):
    return HEAD + f"<P> {text}\r\n" + TAIL


def utf16le(s):
    return s.encode("utf-16-le")


PAGES = {
    # the success page in every encoding NDES or a gateway may produce
    "success-utf16le.html": utf16le(success()),
    "success-utf16le-bom.html": b"\xff\xfe" + utf16le(success()),
    "success-utf16be-bom.html": b"\xfe\xff" + success().encode("utf-16-be"),
    "success-utf8.html": success().encode("utf-8"),
    # a 2008 R2 server that hands out 32 characters
    "challenge32.html": utf16le(success(challenge=CHALLENGE32)),
    # single-password mode
    "no-expire.html": utf16le(
        success().replace(
            "This password can be used only once and will expire within 60 minutes.",
            "This password will not expire.",
        )
    ),
    "cache-full.html": utf16le(
        message(
            "The password cache is full. Please wait for a password to be used or to "
            "expire, or ask your system administrator."
        )
    ),
    "no-permission.html": utf16le(
        message(
            "You do not have sufficient permission to enroll with SCEP. Please contact your "
            "system administrator."
        )
    ),
    # what a wrong URL (the SCEP endpoint, an IIS default page) gives
    "no-marker.html": (
        "<!DOCTYPE html>\r\n<html><head><title>IIS Windows Server</title></head>\r\n"
        "<body><div id=\"container\"><img src=\"iisstart.png\" alt=\"IIS\"></div></body>"
        "</html>\r\n"
    ).encode("ascii"),
    # a gateway that rewrote the page without bold tags
    "no-bold.html": utf16le(
        success().replace(f"<B> {CHALLENGE} </B>", f"{CHALLENGE}")
    ),
    # a hostile or broken page: a token far longer than any challenge
    "evil-huge-token.html": success(challenge="A" * 5000).encode("utf-8"),
    # lowercase hex: kept verbatim, it passes challenge_chars = hex
    "lowercase-hex.html": utf16le(success(challenge=CHALLENGE.lower())),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in sorted(PAGES.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
