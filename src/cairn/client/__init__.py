"""The SDK's remote backend: a Cairn server's registry and objects over HTTP.

`get_backend()` returns a `RemoteBackend` when CAIRN_URL is set (with CAIRN_API_KEY).
"""
