#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Validate procimage records (JSON lines) against the record schema.

usage: validate_records.py SCHEMA.json RECORDS.jsonl...

Each record is checked against the definition of its plugin and event (the `plugin` key, or
`probe` when there is none); a record whose plugin and event the schema does not define is an
error too. With --whole, every record is also checked against the whole document (its oneOf),
which is slower. Prints one line per invalid record (at most 20 per definition) and exits 1 if
any record was invalid, 0 otherwise.
"""
import json
import sys

try:
    import jsonschema
except ImportError:
    print("validate_records.py: the Python module jsonschema is missing "
          "(Debian package python3-jsonschema; scripts/install-deps.sh installs it)", file=sys.stderr)
    sys.exit(2)


def main(argv):
    whole = "--whole" in argv
    args = [a for a in argv if a != "--whole"]
    if len(args) < 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    defs = schema["$defs"]
    validators = {}
    whole_validator = jsonschema.Draft202012Validator(schema) if whole else None

    def validator(name):
        if name not in validators:
            sub = {"$schema": schema["$schema"], "$ref": "#/$defs/" + name, "$defs": defs}
            validators[name] = jsonschema.Draft202012Validator(sub)
        return validators[name]

    bad = 0
    shown = {}
    count = 0
    for path in args[1:]:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                count += 1
                rec = json.loads(line)
                plugin = rec.get("plugin", rec.get("probe"))
                name = "%s.%s" % (plugin, rec.get("event"))
                if name not in defs:
                    name = "%s.*" % plugin  # a probe that declares no schema
                problems = []
                if name not in defs:
                    problems = ["the schema defines no record %s.%s" % (plugin, rec.get("event"))]
                else:
                    problems = [e.message for e in validator(name).iter_errors(rec)]
                if whole_validator is not None and not problems:
                    problems = [e.message for e in whole_validator.iter_errors(rec)]
                if problems:
                    bad += 1
                    shown[name] = shown.get(name, 0) + 1
                    if shown[name] <= 20:
                        print("%s:%d: %s: %s" % (path, lineno, name, "; ".join(problems[:3])))
    if bad:
        print("%d of %d records do not validate against the record schema" % (bad, count))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
