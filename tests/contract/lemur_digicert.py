"""Netflix Lemur's DigiCert plugins (lemur==1.9.3, lemur.plugins.lemur_digicert) run for real
against `certkeeper sandbox`: a new order through the issuer plugin (order info polled until
issued, pem_all downloaded and split into leaf, intermediate and root), a pending order
fetched, a cancel, and the source plugin listing the organization's issued orders (list
orders with filters and pages, download by platform 29 = pem_all).

Usage: python lemur_digicert.py BASE_URL API_KEY ORDER_ID. Prints one JSON object.
"""
import json
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask

base_url, api_key, order_id = sys.argv[1], sys.argv[2], int(sys.argv[3])
app = Flask("certkeeper-contract")
app.config.update(
    DIGICERT_API_KEY=api_key,
    DIGICERT_URL=base_url,
    DIGICERT_ORDER_TYPE="ssl_plus",
    DIGICERT_ORG_ID=5,
    DIGICERT_SOURCE_ENABLED=True,
    DIGICERT_ROOT="unused by the calls exercised here",
)
out = {}
with app.app_context():
    from lemur.plugins.lemur_digicert.plugin import DigiCertIssuerPlugin, DigiCertSourcePlugin

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lemur.example.test")]))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("lemur.example.test"), x509.DNSName("www.lemur.example.test")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    issuer = DigiCertIssuerPlugin()
    body, chain, certificate_id = issuer.create_certificate(
        csr,
        {
            "common_name": "lemur.example.test",
            "extensions": {"sub_alt_names": {"names": [x509.DNSName("www.lemur.example.test")]}},
        },
    )
    leaf = x509.load_pem_x509_certificate(body.encode())
    out["create"] = {
        "certificate_id": certificate_id,
        "leaf_matches_key": leaf.public_key().public_numbers() == key.public_key().public_numbers(),
        "names": sorted(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)),
        "chain_subject": x509.load_pem_x509_certificate(chain.encode()).subject.rfc4514_string(),
    }

    class Pending:
        external_id = order_id
        name = "contract"

    got = issuer.get_ordered_certificate(Pending)
    out["ordered"] = {"external_id": got["external_id"], "has_body": got["body"].startswith("-----BEGIN CERTIFICATE-----")}
    try:
        issuer.cancel_ordered_certificate(Pending, note="contract test")
        out["cancel"] = "ok"
    except Exception as e:  # Lemur sends "CANCELED"; CertCentral documents "canceled".
        out["cancel"] = str(e)

    source = DigiCertSourcePlugin()
    certs = source.get_certificates({})
    out["source"] = sorted(
        x509.load_pem_x509_certificate(c["body"].encode()).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        for c in certs
    )
    out["source_chains"] = [c["chain"].count("BEGIN CERTIFICATE") for c in certs]
print(json.dumps(out))
