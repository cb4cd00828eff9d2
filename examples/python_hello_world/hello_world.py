"""Aurora's tutorial program: greet every ten seconds, a hundred times."""

import sys
import time

GREETINGS = 100
DELAY_SECS = 10


def main():
    for n in range(1, GREETINGS + 1):
        print("Hello world from nix-aurora! (%d/%d, %s; next in %d secs)"
              % (n, GREETINGS, time.asctime(), DELAY_SECS))
        sys.stdout.flush()
        time.sleep(DELAY_SECS)


if __name__ == "__main__":
    main()
