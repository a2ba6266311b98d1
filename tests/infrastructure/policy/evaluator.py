"""The offline IAM policy evaluator, re-exported for the matrices (it lives in kommunmoln/policy_eval.py
so that `make demo` can use it without importing tests)."""

from kommunmoln.policy_eval import (  # noqa: F401 - re-exports
    ACCOUNT,
    ALLOW,
    EXPLICIT_DENY,
    IMPLICIT_DENY,
    PARTITION,
    REGION,
    Request,
    Resolver,
    UnsupportedPolicy,
    condition_holds,
    deny_statements_matching,
    evaluate,
    logical_ids,
)
