"""Function-calling evaluation of Callcard on the Berkeley Function Calling Leaderboard data."""
