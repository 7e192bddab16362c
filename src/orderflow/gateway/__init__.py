"""The payment gateway edge: the interface, the HTTP client, and the sandbox gateway server."""
