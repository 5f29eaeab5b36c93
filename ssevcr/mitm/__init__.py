"""ssevcr's mitmproxy side: the recording addon, the replay-proxy addon and the driver that runs
``mitmdump`` as a child. Importing this package imports nothing: the addons are loaded into
mitmdump by file path, the driver by ``ssevcr record`` / ``ssevcr replay --proxy``."""
