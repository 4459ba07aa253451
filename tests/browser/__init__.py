"""The dashboard at ``/ui`` driven in headless Chromium (Debian's, through Playwright) on a
local stack started over real sockets."""
