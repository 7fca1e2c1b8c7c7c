"""The endpoint picker's EndpointPickerConfig file: decoding, sections, plugin loading.

Flags and environment are declared in the sibling package `epp/options/`.
"""
