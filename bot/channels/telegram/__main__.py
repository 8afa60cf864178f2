"""`python -m bot.channels.telegram`."""

import sys

from bot.channels.telegram.bridge import main

sys.exit(main())
