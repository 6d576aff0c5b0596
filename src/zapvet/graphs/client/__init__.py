"""The customer attendant: registers pets, finds free slots, books, reschedules, hands over."""
