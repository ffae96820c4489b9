"""Video adapters: decode (PyAV), clips (the chunk stage for time), describers (clip -> text), memory."""
