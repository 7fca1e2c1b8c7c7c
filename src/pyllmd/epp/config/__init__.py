"""The endpoint picker's start-up configuration: flags, environment and the EndpointPickerConfig file."""
