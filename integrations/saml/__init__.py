"""SAML 2.0 single sign-on for the console (pysaml2, Debian xmlsec1)."""
