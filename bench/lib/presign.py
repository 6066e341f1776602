"""Presigned S3 URLs (SigV4, query string, UNSIGNED-PAYLOAD) for bench/ceilings, standard library
only: a wrk run to new keys needs one URL per request, tens of thousands a round, which boto3
signs too slowly.

  presign.py METHOD HOST ACCESS_KEY SECRET TEMPLATE FIRST LAST [SESSION_TOKEN]

prints, for n from FIRST to LAST, the path and query of TEMPLATE (a path such as
/s3/bench/<sub>/{n}.bin, made of unreserved characters and '/') signed for METHOD, valid for a
day, for requests whose Host header is HOST (127.0.0.1:port, as wrk sends it). Region us-east-1.
With SESSION_TOKEN (a user's JWT; SECRET is then the anon key) the URL carries
X-Amz-Security-Token, as Supabase's session credentials do.
"""
import datetime
import hashlib
import hmac
import sys
from urllib.parse import quote


def main():
    method, host, access_key, secret, template, first, last = sys.argv[1:8]
    token = sys.argv[8] if len(sys.argv) > 8 else ""
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    scope = f"{day}/us-east-1/s3/aws4_request"
    key = f"AWS4{secret}".encode()
    for part in (day, "us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    # The query's parameters, already in their sorted (canonical) order.
    query = "&".join([
        "X-Amz-Algorithm=AWS4-HMAC-SHA256",
        "X-Amz-Credential=" + quote(f"{access_key}/{scope}", safe=""),
        f"X-Amz-Date={amz_date}",
        "X-Amz-Expires=86400",
    ] + (["X-Amz-Security-Token=" + quote(token, safe="")] if token else []) + [
        "X-Amz-SignedHeaders=host",
    ])
    out = []
    for n in range(int(first), int(last) + 1):
        path = template.replace("{n}", str(n))
        canonical = f"{method}\n{path}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD"
        to_sign = "AWS4-HMAC-SHA256\n{}\n{}\n{}".format(
            amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest())
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        out.append(f"{path}?{query}&X-Amz-Signature={signature}\n")
    sys.stdout.write("".join(out))


if __name__ == "__main__":
    main()
