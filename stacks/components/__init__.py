"""One construct per logical unit. Each takes keyword-only typed arguments and exposes
its resources as attributes. (Not named `constructs`: that would shadow the package.)"""
