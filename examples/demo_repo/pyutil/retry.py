import functools
import random
import time


class RetryError(Exception):
    def __init__(self, attempts, last):
        super().__init__(f"gave up after {attempts} attempts: {last}")
        self.attempts = attempts
        self.last = last


def retry(times=5, base_delay=0.1, max_delay=10.0, exceptions=(Exception,), jitter=True, sleep=time.sleep):
    def decorator(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            delay = base_delay
            for attempt in range(1, times + 1):
                try:
                    return fn(*args, **kwargs)
                except exceptions as err:
                    if attempt == times:
                        raise RetryError(attempt, err) from err
                    wait = min(delay, max_delay)
                    if jitter:
                        wait *= random.uniform(0.5, 1.5)
                    sleep(wait)
                    delay *= 2
        return wrapper
    return decorator
