"""Annotation tool formats (brat, Label Studio, doccano): import to SpERT sentences, export back."""
