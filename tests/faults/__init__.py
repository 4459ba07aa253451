"""Fault injection: runs driven through the real worker on moto survive every crash window."""
