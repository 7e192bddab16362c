"""The payment gateway edge: the interface and the HTTP client (the sandbox: orderflow.tools)."""
