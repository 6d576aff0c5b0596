"""Organization files: the TOML an operator writes, validated and applied to the database."""

from zapvet.org.apply import ApplyReport, apply_spec
from zapvet.org.spec import OrgSpec, load_spec, parse_spec

__all__ = ["ApplyReport", "OrgSpec", "apply_spec", "load_spec", "parse_spec"]
