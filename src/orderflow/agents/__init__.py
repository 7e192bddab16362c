"""Thin Faust agents around the domain: who consumes which topic (see ``orderflow.topics``)."""
