from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from freedompay_async._jws import (
    SignatureError,
    Signer,
    b64url,
    b64url_decode,
    protected_header,
    sign,
    verify,
)

VECTOR_HEADER = (
    b'{"uri":"/v5/partner/wallet/add","auth_id":"123456","method":"POST","params":"","alg":"HS256"}'
)
VECTOR_BODY = (
    b'{"request_id":"828cf71d-a447-4a67-a149-c1df8bc197ca","country":"KAZ","currency":"KZT"}'
)
VECTOR_SECRET = "your-256-bit-secret"
VECTOR_SIGNATURE = (
    "eyJ1cmkiOiIvdjUvcGFydG5lci93YWxsZXQvYWRkIiwiYXV0aF9pZCI6IjEyMzQ1NiIsIm1ldGhvZCI6IlBPU1QiLCJwY"
    "XJhbXMiOiIiLCJhbGciOiJIUzI1NiJ9..5xVbhml5y1Uw1TYQ_djwwefFz8y_CnX-ajzNvOBCcmE"
)


def test_protected_header_is_byte_for_byte_the_documented_json() -> None:
    assert protected_header("/v5/partner/wallet/add", "123456") == VECTOR_HEADER


def test_spec_test_vector() -> None:
    signature = sign(
        VECTOR_BODY, uri="/v5/partner/wallet/add", auth_id="123456", secret_key=VECTOR_SECRET
    )
    assert signature == VECTOR_SIGNATURE


def test_signer_reuses_the_header_and_matches_one_off_sign() -> None:
    signer = Signer(
        uri="/v5/partner/wallet/add", auth_id="123456", secret_key=VECTOR_SECRET.encode()
    )
    assert signer.sign(VECTOR_BODY) == VECTOR_SIGNATURE
    assert signer.sign(VECTOR_BODY) == VECTOR_SIGNATURE  # no state carried between calls
    assert VECTOR_SECRET not in repr(signer)


def test_hs512_signs_and_verifies() -> None:
    signature = sign(b"{}", uri="/x", auth_id="1", secret_key="k", alg="HS512")
    header = verify(signature, b"{}", secret_key="k")
    assert header["alg"] == "HS512"
    # SHA-512 MAC is 64 bytes: 86 base64url characters.
    assert len(signature.split("..")[1]) == 86
    assert signature != sign(b"{}", uri="/x", auth_id="1", secret_key="k", alg="HS256")


def test_unknown_alg_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported JWS alg"):
        sign(b"{}", uri="/x", auth_id="1", secret_key="k", alg="none")


def test_verify_accepts_the_vector_and_rejects_tampering() -> None:
    assert verify(VECTOR_SIGNATURE, VECTOR_BODY, secret_key=VECTOR_SECRET)["auth_id"] == "123456"
    with pytest.raises(SignatureError, match="does not match"):
        verify(VECTOR_SIGNATURE, VECTOR_BODY + b" ", secret_key=VECTOR_SECRET)
    with pytest.raises(SignatureError, match="does not match"):
        verify(VECTOR_SIGNATURE, VECTOR_BODY, secret_key="another-secret")
    with pytest.raises(SignatureError, match="auth_id"):
        verify(VECTOR_SIGNATURE, VECTOR_BODY, secret_key=VECTOR_SECRET, auth_ids=frozenset({"9"}))


@pytest.mark.parametrize(
    "value",
    ["", "..", "abc", "abc.def.ghi", "abc..", "..abc", "!!!..abc", VECTOR_SIGNATURE + ".x"],
)
def test_verify_rejects_malformed_values(value: str) -> None:
    with pytest.raises(SignatureError):
        verify(value, VECTOR_BODY, secret_key=VECTOR_SECRET)


def test_signature_error_never_contains_the_expected_mac() -> None:
    expected_mac = VECTOR_SIGNATURE.split("..")[1]
    forged = VECTOR_SIGNATURE.split("..")[0] + ".." + "A" * len(expected_mac)
    with pytest.raises(SignatureError) as caught:
        verify(forged, VECTOR_BODY, secret_key=VECTOR_SECRET)
    assert expected_mac not in str(caught.value)


@given(st.binary(max_size=200))
def test_b64url_round_trips_without_padding(data: bytes) -> None:
    encoded = b64url(data)
    assert b"=" not in encoded and b"+" not in encoded and b"/" not in encoded
    assert b64url_decode(encoded) == data


@given(
    st.binary(max_size=300), st.text(min_size=1, max_size=40), st.sampled_from(["HS256", "HS512"])
)
def test_any_body_signed_verifies_and_a_changed_body_does_not(
    body: bytes, secret: str, alg: str
) -> None:
    signature = sign(body, uri="/v5/partner/wallet/info", auth_id="42", secret_key=secret, alg=alg)
    assert verify(signature, body, secret_key=secret)["uri"] == "/v5/partner/wallet/info"
    with pytest.raises(SignatureError):
        verify(signature, body + b"x", secret_key=secret)
