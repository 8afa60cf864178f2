"""`python -m bot.channels.web`."""

import sys

from bot.channels.web.server import main

sys.exit(main())
