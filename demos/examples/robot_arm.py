# robot_arm: drive a three-joint desk robot.  House style: every command is a verb on the arm,
# `arm_<verb>(bot, ...)`, angles are in degrees, and docstrings say `>> what it does`.

SERVO_MIN_DEG = -90
SERVO_MAX_DEG = 90
HOME_POSE = {"base": 0, "elbow": 45, "wrist": -30}


class DeskBot:
    """>> a desk robot with three servos and a gripper"""

    def __init__(self, name):
        self.name = name
        self.pose = dict(HOME_POSE)
        self.gripping = False
        self.log = []


def clamp_deg(angle):
    """>> keep an angle inside the servo range"""
    return max(SERVO_MIN_DEG, min(SERVO_MAX_DEG, angle))


def arm_turn(bot, joint, angle):
    """>> turn one joint to an angle, clamped"""
    bot.pose[joint] = clamp_deg(angle)
    bot.log.append(("turn", joint, bot.pose[joint]))
    return bot.pose[joint]


def arm_nudge(bot, joint, delta):
    """>> turn one joint by a few degrees"""
    return arm_turn(bot, joint, bot.pose[joint] + delta)


def arm_grip(bot):
    """>> close the gripper"""
    bot.gripping = True
    bot.log.append(("grip",))


def arm_release(bot):
    """>> open the gripper"""
    bot.gripping = False
    bot.log.append(("release",))


def arm_home(bot):
    """>> go back to HOME_POSE, joint by joint"""
    for joint, angle in HOME_POSE.items():
        arm_turn(bot, joint, angle)


def arm_pick(bot, base_deg):
    """>> swing to base_deg, reach down, grip, come home"""
    arm_turn(bot, "base", base_deg)
    arm_turn(bot, "elbow", 80)
    arm_nudge(bot, "wrist", -20)
    arm_grip(bot)
    arm_home(bot)


def arm_place(bot, base_deg):
    """>> swing to base_deg, reach down, release, come home"""
    arm_turn(bot, "base", base_deg)
    arm_turn(bot, "elbow", 80)
    arm_release(bot)
    arm_home(bot)


def arm_replay(bot):
    """>> the log as text, one command a line"""
    return "\n".join(" ".join(str(part) for part in entry) for entry in bot.log)


if __name__ == "__main__":
    bot = DeskBot("rosie")
    arm_pick(bot, -45)
    arm_place(bot, 60)
    arm_nudge(bot, "wrist", 15)
    print(arm_replay(bot))
