"""KV-event-driven prefix index of the precise prefix scorer (the kv-events contract).

`events` decodes ZMQ messages, `processor` applies them to the `index`,
`subscriber` runs the ZMQ sockets, `prompt` turns a request into token ids and
`params` decodes the plugin's parameters.
"""
