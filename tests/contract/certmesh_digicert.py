"""certmesh's DigiCert client (certmesh==3.0.38, certmesh.providers.digicert_client) run for
real against `certkeeper sandbox`: list and search orders (filters and pages), a duplicate
without server_platform (certmesh omits it), a revoke, and a new order polled until issued.

Usage: python certmesh_digicert.py SERVICES_URL API_KEY ORDER_ID. Prints one JSON object.
"""
import json
import os
import sys

base_url, api_key, order_id = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.environ["CM_DIGICERT_API_KEY"] = api_key

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certmesh.providers import digicert_client as dc

cfg = {
    "base_url": base_url,
    "timeout_seconds": 10,
    "retry": {"max_attempts": 2, "wait_min_seconds": 0.1, "wait_max_seconds": 0.5},
    "polling": {"interval_seconds": 1, "max_wait_seconds": 30},
}
out = {}
issued = dc.list_issued_certificates(cfg, {}, None, status="issued")
out["listed"] = sorted({c.order_id for c in issued})
first = next(c for c in issued if c.order_id == order_id)
out["search_cn"] = [c.order_id for c in dc.search_certificates(cfg, {}, None, common_name=first.common_name)]
out["search_serial"] = [c.order_id for c in dc.search_certificates(cfg, {}, None, serial_number=first.serial_number)]

key = ec.generate_private_key(ec.SECP256R1())
csr = (
    x509.CertificateSigningRequestBuilder()
    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first.common_name)]))
    .sign(key, hashes.SHA256())
    .public_bytes(serialization.Encoding.PEM)
    .decode()
)
dup = dc.duplicate_certificate(cfg, {}, None, order_id, csr, common_name=first.common_name)
out["duplicate"] = sorted(dup.keys())
out["revoke"] = sorted(dc.revoke_certificate(cfg, {}, None, certificate_id=first.certificate_id, reason="superseded").keys())
try:
    bundle = dc.order_and_await_certificate(
        cfg, {}, None, dc.OrderRequest(common_name="certmesh.example.test", key_size=2048, organization_id=5)
    )
    out["order"] = "downloaded"
except Exception as e:  # certmesh reads pem_all as a ZIP; CertCentral serves PEM.
    out["order"] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
