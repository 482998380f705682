"""Rewrites of the IR that synthesis draws from: channel widths (coupling), skipped residual blocks, factorized
and strided convs, and the weight transfer that carries a trained parent's weights into a rewritten child."""
