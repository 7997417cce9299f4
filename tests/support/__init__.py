"""Helpers the test suite shares: a private dockerd, locally built images, the daemon as a real
process, per-test container scopes and polling."""
