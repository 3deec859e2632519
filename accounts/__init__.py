"""Curator accounts, beside the processing (``pipeline/``) rather than inside it: registration and sign-in,
passwords, signed links, password reset, throttling and mail. Free of Dash and Flask; imports only ``store``.

- ``users``: registration (finished from a mailed link), sign-in, profile, sessions, roles.
- ``passwords``: the password rules and the hash.
- ``tokens``: signed, expiring links bound to the password.
- ``reset``: password reset by mail.
- ``throttle``: attempt counting shared by the processes of one machine.
- ``mail``: SMTP, or the log in the embedded mode; links built from the configured site address.
"""
