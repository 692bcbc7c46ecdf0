"""What only the HTTP side needs: CORS, the upload page, the bytes of an upload."""
