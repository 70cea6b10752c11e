"""Validates fpnstream JSONL files line by line against the JSON Schema; exit 1 on the first invalid line."""
import collections
import json
import sys

import jsonschema

schema = json.load(open(sys.argv[1]))
validator = jsonschema.Draft202012Validator(schema)
ok = True
for path in sys.argv[2:]:
    counts = collections.Counter()
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):
                print(f"{path}:{n}: line does not end with a newline (half-written?)")
                ok = False
                break
            try:
                obj = json.loads(raw)
            except ValueError as e:
                print(f"{path}:{n}: not JSON: {e}")
                ok = False
                break
            errors = sorted(validator.iter_errors(obj), key=lambda e: e.path)
            if errors:
                e = errors[0]
                print(f"{path}:{n}: {'/'.join(map(str, e.absolute_path)) or '(line)'}: {e.message[:200]}")
                ok = False
                break
            counts[obj["type"]] += 1
    print(f"{path}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + (" — valid" if ok else ""))
sys.exit(0 if ok else 1)
