"""Network building blocks and the one-stage localizer that several methods extend; each
method's own network lives with the method in ``tal.methods``."""
